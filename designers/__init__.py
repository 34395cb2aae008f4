"""Design domains behind one small protocol (:class:`designers.base.Designer`)."""
